"""``[run] mode = "sampled"``: spec checks, problems per seed, and the results table of one rule.

``sim.experiment.run`` dispatches here.  The table has the exact-mode columns (``rule, seed, iteration`` +
:data:`sim.metrics.METRIC_COLUMNS`, context-weighted for contextual problems) plus

* ``queries`` — cumulative oracle queries used by the iterations done so far (t × N × queries per
  pair, counted by the scheme in :mod:`bandits.oracles`; 0 for ``exact_win_rates``).  With
  ``data = "offline"`` the labels are bought once, before the first update: 0 at t = 0 and
  ``offline_pairs`` (one query per pair) for every t ≥ 1 (:mod:`sim.sampled.offline`);
* ``distance_to_exact`` — max_{x,y} |log π̂_t(y|x) − log π̂^{exact}_t(y|x)| for the update that
  produced iteration t (:mod:`sim.sampled.engine`; NaN at t = 0);
* ``loss`` — the rule's loss on that iteration's pairs after the inner loop (NaN at t = 0);
* ``inner_gradient`` — max |∂loss/∂θ| over the parameters θ where the inner loop ended (full batch; the largest
  over a multi-stage rule's stages; NaN at t = 0): ≈ 0 only where each iteration's loss was minimised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bandits.continuous import ring_task
from bandits.games import build_game
from bandits.linear import random_linear_bandit
from bandits.oracles import make_pairs
from sim.checkpoint import TrajectoryCheckpoint
from sim.game import game_from_instance
from sim.nash import target_policy
from sim.precision import seed_key
from sim.rules.reference import REFERENCE_EVERY
from sim.sampled.engine import DIVERGENCE_FACTOR, simulate_sampled_grid, stage_plan
from sim.sampled.offline import dataset_queries
from sim.sampled.problem import Problem, problem_from_arrays, problem_from_game
from sim.sampled.validation import validate_sampled_spec  # noqa: F401  (re-exported: spec checks)
from sim.shared_engine import raise_if_diverged, stack_over_seeds
from sim.table import results_table

if TYPE_CHECKING:
    from jax.typing import DTypeLike

    from sim.spec import ExperimentSpec, RuleSpec, RunSpec


def problem_for_seed(spec: ExperimentSpec, seed: int, dtype: DTypeLike) -> Problem:
    """The sampled problem of one seed."""
    run = spec.run
    tau = float(spec.game.tau)
    if run.problem == "ring":
        task = ring_task(run.ring_grid)
        return problem_from_arrays(
            task["preference"], task["features"], task["context_probs"], task["rewards"], tau=tau, dtype=dtype
        )
    if run.problem in ("linear_bradley_terry", "linear_preference_game"):
        kind = "bradley_terry" if run.problem == "linear_bradley_terry" else "preference_game"
        bandit = random_linear_bandit(spec.game.arms, run.feature_dim, run.contexts, kind, seed)
        return problem_from_arrays(
            bandit["preference"], bandit["features"], bandit["context_probs"], bandit["rewards"], tau=tau, dtype=dtype
        )
    game = game_from_instance(build_game(spec.game, seed), jnp.float64)
    target, _ = target_policy(game)
    arms = game.preference.shape[0]
    if run.policy == "tabular":
        features = np.zeros((arms, 0))
    elif run.features == "one_hot":
        features = np.eye(arms)
    else:
        rng = np.random.default_rng([int(seed), 21])
        features = rng.standard_normal((arms, run.feature_dim))
        features /= np.linalg.norm(features, axis=1, keepdims=True)
    return problem_from_game(game, target, features, dtype)


class SampledInputs(NamedTuple):
    """Problems stacked over seeds, their vmap axes, and one PRNG key per seed."""

    problems: Problem
    axes: Problem
    keys: jax.Array


def build_sampled_inputs(spec: ExperimentSpec, dtype: DTypeLike = jnp.float64) -> SampledInputs:
    """Problems for every seed of ``spec`` (leaves shared when equal across seeds) and keys
    (:func:`sim.precision.seed_key`: seed s's key is the same in and out of 64-bit mode)."""
    problems, axes = stack_over_seeds([problem_for_seed(spec, seed, dtype) for seed in spec.seeds])
    keys = jnp.stack([seed_key(seed) for seed in spec.seeds])
    return SampledInputs(problems, axes, keys)


def queries_per_draw(settings: RunSpec, problem: Problem, scheme: str | None = None) -> int:
    """Oracle queries one draw of ``pairs_per_iteration`` pairs makes with ``scheme`` (default: the run's),
    tallied by tracing the scheme (no computation)."""
    box = {}

    def trace(key, log_policy, preference, rewards, context_probs):
        batch, count = make_pairs(
            scheme or settings.pair_scheme,
            key,
            log_policy,
            preference,
            rewards,
            context_probs,
            settings.pairs_per_iteration,
            settings.candidates,
            settings.self_comparison,
        )
        box["queries"] = count
        return batch

    def unbatched(leaf, rank):
        return leaf[0] if leaf.ndim > rank else leaf

    preference = unbatched(problem.preference, 3)
    log_policy = unbatched(problem.log_initial, 2)
    rewards = unbatched(problem.rewards, 2)
    context_probs = unbatched(problem.context_probs, 1)
    jax.eval_shape(trace, jax.random.PRNGKey(0), log_policy, preference, rewards, context_probs)
    return int(box["queries"])


def run_sampled_rule(
    rule: RuleSpec,
    spec: ExperimentSpec,
    inputs: SampledInputs,
    record: np.ndarray,
    progress: Callable[[int, int], object] | None = None,
    checkpoint: TrajectoryCheckpoint | None = None,
) -> pd.DataFrame:
    """All grid points × seeds of one ``[[rule]]`` table in sampled mode, jitted (a long run in blocks,
    ``progress(iterations done, T)`` between them, its state kept in ``checkpoint``:
    :func:`sim.sampled.engine.simulate_sampled_grid`)."""
    metrics, first_nonfinite = simulate_sampled_grid(
        rule.name,
        rule.fixed(),
        sampled_grid(rule),
        spec.run,
        inputs.problems,
        inputs.axes,
        inputs.keys,
        record,
        progress,
        checkpoint=None if checkpoint is None else checkpoint.scope("seeds"),
    )
    return sampled_frame(rule, spec, inputs.problems, record, metrics, first_nonfinite)


def sampled_grid(rule: RuleSpec) -> dict[str, np.ndarray]:
    """The swept parameters of a rule table: name → values over its grid points (G,)."""
    labels = rule.grid_labels()
    return {name: np.array([point[name] for _, point in labels], dtype=np.float64) for name in rule.swept()}


def sampled_frame(
    rule: RuleSpec,
    spec: ExperimentSpec,
    problems: Problem,
    record: np.ndarray,
    metrics: dict[str, np.ndarray],
    first_nonfinite: np.ndarray,
) -> pd.DataFrame:
    """The results table of one rule table from the engine's ``metrics`` (column → (G, S, R)) and
    ``first_nonfinite`` (G, S) over the seeds of ``spec`` (a divergence raises); ``problems``: the seeds'
    stacked problems (their shapes fix the queries per draw)."""
    labels = rule.grid_labels()
    raise_if_diverged(
        first_nonfinite,
        labels,
        spec.seeds,
        "diverged in sampled mode",
        "the inner loss or the policy parameters became non-finite (NaN or inf), or the inner loop ended with a "
        f"loss more than {DIVERGENCE_FACTOR:g} × (1 + its starting loss), with optimizer {spec.run.optimizer!r} "
        f"and learning_rate {spec.run.learning_rate:g}; lower run.learning_rate (or use fewer inner_steps).",
    )
    frame = results_table(labels, spec.seeds, record, metrics, rule.categorical())
    # regret sums suboptimality: where that does not apply (a preference game) neither does regret,
    # also at t = 0 where the engine's running sum starts at 0.0 (as in exact mode: the column is empty)
    frame.loc[frame["suboptimality"].isna(), "regret"] = np.nan
    iterations = frame["iteration"].to_numpy(np.int64)
    if spec.run.data == "offline":
        frame["queries"] = np.where(iterations >= 1, dataset_queries(spec.run), 0).astype(np.int64)
    else:
        stages, scheme = stage_plan(rule.name, rule.parameters, spec.run)
        per_draw = queries_per_draw(spec.run, problems, scheme)
        fresh = sum(stage.pairs_from != "carried" for stage in stages)
        carried = any(stage.pairs_from == "carried" for stage in stages)
        # a carried first stage trains at t = 0 on pairs bought before the first update, and draws anew
        # at every reference advance (updates from t = M, 2M, …: ⌊(t − 1)/M⌋ of them before iteration t)
        up_front = np.where(iterations >= 1, per_draw, 0) if carried else 0
        restarts = 0
        if carried and rule.parameters.get(REFERENCE_EVERY.name) is not None:  # M per row (it may be swept)
            every = {
                label: point.get(REFERENCE_EVERY.name, rule.parameters[REFERENCE_EVERY.name]) for label, point in labels
            }
            periods = frame["rule"].map(every).to_numpy(np.int64)
            restarts = np.maximum(iterations - 1, 0) // periods
        frame["queries"] = iterations * per_draw * fresh + up_front + restarts * per_draw
    frame["distance_to_exact"] = metrics["distance_to_exact"].reshape(-1)
    frame["loss"] = metrics["loss"].reshape(-1)
    frame["inner_gradient"] = metrics["inner_gradient"].reshape(-1)
    return frame
