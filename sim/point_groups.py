"""Points of a ``[game]`` sweep that run as one vmapped call: groups, and the grouped exact and sampled runs.

Two points of a sweep (:mod:`sim.field_sweep`) compile to the same program when they differ only in the
*values* of the game's arrays: π_ref, π_0, P, the rewards and τ, with the same shapes.  Such points form a
**group**, and each ``[[rule]]`` table runs over a group as one vmapped, jitted call: the points' per-seed
games are stacked along the batch axis (point × seed) of the grid × seed vmap
(:func:`sim.shared_engine.compile_over_grid_and_seeds`), and rule parameters that differ between the
points (a rule's τ that follows ``game.tau``, or a default derived from it) travel with each point's
games as traced per-batch values.  Which points group (:func:`point_groups`):

Which points group is decided in :mod:`sim.point_plan` (no JAX, so shard plans stay light):

* every ``[run]`` field splits groups: in sampled mode they are static settings of the engine (loop
  lengths, shapes, the optimiser and its learning rate); with ``[run] seed_block`` every point runs
  alone, in its seed blocks;
* the swept fields in which two points differ must all be in :data:`sim.point_plan.GROUPED_GAME_FIELDS` (τ, the
  reference and initial policy, the strength/scale/construction of the game's numbers); ``kind``,
  ``arms`` and ``components`` change shapes or the game's arrays' meaning and split groups;
* every rule table must be the same program at every point: same rule, grid, categorical values and
  non-float parameters; float parameters that differ are the traced per-point values.

In sampled mode (:func:`run_sampled_rule_over_points`) the points are not put on the seed axis: the
sampled engine's call gets a third, outermost ``vmap`` over the points
(:func:`sim.shared_engine.compile_over_grid_and_seeds` with ``point_axes``), each point with its own
problems, its own per-seed PRNG keys (the pairs it draws are those its own run draws) and its differing
rule parameters as entries of its own copy of the grid, so they are batched as the grid's values are,
not per seed.  (Batched per seed, a rule τ made XLA round some steps differently, and Adam, which
divides by √v + ε, turned those last bits of a near-zero gradient into differences of 1e-6.)  A long
grouped run, exact or sampled, goes in time blocks with progress between them and its state kept
(:mod:`sim.checkpoint`), as a plain one.

A group of one point runs as a plain run (:func:`sim.experiment.run_rule`).  The grouped results equal
the separate runs' to rounding (the batch is larger, so the last bits may differ: ≤ 1e-15 measured,
sampled mode included); the tests compare them to 1e-12.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from sim.checkpoint import CheckpointScope, TrajectoryCheckpoint
from sim.game import Game
from sim.headtohead import FINAL_POLICY
from sim.program_cache import SourceKey
from sim.rules import build_rule, uses_built_in_code
from sim.sampled.engine import simulate_sampled_grid
from sim.sampled.experiment import SampledInputs, sampled_frame, sampled_grid
from sim.shared_engine import (
    Schedule,
    compile_over_grid_and_seeds,
    grid_arrays,
    raise_if_diverged,
    run_blocks_locating,
    shard_over_seeds,
    whole_run_schedule,
)
from sim.spec import ExperimentSpec, RuleSpec
from sim.table import results_table
from sim.trajectory import block_updates, compiler_options, simulate_block


def varying_parameters(rules: Sequence[RuleSpec]) -> list[str]:
    """Fixed parameters of one rule table whose values differ between the points of a group."""
    fixed = [rule.fixed() for rule in rules]
    return sorted(k for k in fixed[0] if any(f[k] != fixed[0][k] for f in fixed[1:]))


def stack_points(games: Sequence[Game], axes: Sequence[Game], seeds: int) -> tuple[Game, Game]:
    """The games of several points on one batch axis (point-major, then seed): a leaf equal and shared
    (axis ``None``) in every point stays shared; the others are broadcast to (seeds, …) and concatenated."""
    leaves, leaf_axes = [], []
    for index in range(len(Game._fields)):
        values = [game[index] for game in games]
        shared = all(axis[index] is None for axis in axes)
        if shared and all(np.array_equal(np.asarray(v), np.asarray(values[0]), equal_nan=True) for v in values):
            leaves.append(values[0])
            leaf_axes.append(None)
            continue
        per_seed = [
            v if axis[index] == 0 else jnp.broadcast_to(v, (seeds,) + jnp.shape(v)) for v, axis in zip(values, axes)
        ]
        leaves.append(jnp.concatenate(per_seed))
        leaf_axes.append(0)
    return Game(*leaves), Game(*leaf_axes)


def run_rule_over_points(
    rules: Sequence[RuleSpec],
    specs: Sequence[ExperimentSpec],
    inputs: Sequence,
    record: np.ndarray,
    progress: Callable[[int, int], object] | None = None,
    checkpoint: TrajectoryCheckpoint | None = None,
) -> list[pd.DataFrame]:
    """One rule table at several points of a group in one vmapped call; one results frame per point.

    ``rules[i]`` is the table at point ``specs[i]``, ``inputs[i]`` that point's
    :class:`sim.experiment.RunInputs`.  The frames are those :func:`sim.experiment.run_rule` (sampled:
    :func:`sim.sampled.experiment.run_sampled_rule`) gives for each point alone (to rounding).
    ``progress(iterations done, T)``: between the time blocks of a long run, which keeps its state in
    ``checkpoint`` (:mod:`sim.checkpoint`).
    """
    if inputs[0].sampled is not None:
        sampled = [i.sampled for i in inputs]
        return run_sampled_rule_over_points(rules, specs, sampled, record, progress, checkpoint)
    first, spec = rules[0], specs[0]
    seeds = len(spec.seeds)
    dtype = np.float64 if spec.precision == "float64" else np.float32
    labels = [rule.grid_labels() for rule in rules]
    grid = {name: np.array([point[name] for _, point in labels[0]], dtype=dtype) for name in first.swept()}
    varying = varying_parameters(rules)
    static = {k: v for k, v in first.fixed().items() if k not in varying}
    own = tuple(np.repeat(np.array([rule.fixed()[k] for rule in rules], dtype=dtype), seeds) for k in varying)
    games, game_axes = stack_points([i.games for i in inputs], [i.game_axes for i in inputs], seeds)
    targets = jnp.concatenate([i.targets for i in inputs])
    missing = [jnp.full(i.targets.shape, jnp.nan, i.targets.dtype) for i in inputs]
    given = [m if i.unregularised is None else i.unregularised for m, i in zip(missing, inputs)]
    unregularised = jnp.concatenate(given)

    def make_rule(parameters):
        return build_rule(first.name, {**static, **parameters})

    cache_key = (first.name, spec.precision, tuple(sorted((k, repr(v)) for k, v in static.items())))
    if uses_built_in_code(first.name, static):  # its compiled programs may be kept between processes
        cache_key = SourceKey(cache_key)
    metrics, first_nonfinite = simulate_over_points(
        make_rule, grid, tuple(varying), own, games, game_axes, targets, unregularised, record, cache_key, progress,
        None if checkpoint is None else checkpoint.scope("points"),
    )  # fmt: skip
    frames = []
    for index, (rule, point_spec) in enumerate(zip(rules, specs)):
        block = slice(index * seeds, (index + 1) * seeds)
        raise_if_diverged(
            first_nonfinite[:, block],
            labels[index],
            point_spec.seeds,
            "produced non-finite values (NaN or inf) in its policy",
            f"its step is too large for {point_spec.precision} or a parameter is degenerate.",
        )
        point_metrics = {name: values[:, block] for name, values in metrics.items()}
        frames.append(results_table(labels[index], point_spec.seeds, record, point_metrics, rule.categorical()))
    return frames


def run_sampled_rule_over_points(
    rules: Sequence[RuleSpec],
    specs: Sequence[ExperimentSpec],
    inputs: Sequence[SampledInputs],
    record: np.ndarray,
    progress: Callable[[int, int], object] | None = None,
    checkpoint: TrajectoryCheckpoint | None = None,
) -> list[pd.DataFrame]:
    """:func:`run_rule_over_points` in sampled mode: one :func:`sim.sampled.engine.simulate_sampled_grid`
    call with the points outermost (their problems and PRNG keys stacked on a point axis, their differing
    float parameters in each point's copy of the grid), so each point draws the pairs its own run draws and
    its parameters are not batched over its seeds: its rows equal its own run's (Adam turns rounding-level
    differences of a near-zero gradient into visible ones, so the sampled path keeps each point's program
    as its own run has it)."""
    first, seeds = rules[0], len(specs[0].seeds)
    varying = varying_parameters(rules)
    static = {k: v for k, v in first.fixed().items() if k not in varying}
    problems, seed_axes, point_axes = stack_over_points([i.problems for i in inputs], [i.axes for i in inputs], seeds)
    dtype = problems.log_initial.dtype
    own = {k: np.array([rule.fixed()[k] for rule in rules], dtype=dtype) for k in varying}
    keys = jnp.stack([i.keys for i in inputs])
    metrics, first_nonfinite = simulate_sampled_grid(
        first.name, static, sampled_grid(first), specs[0].run, problems, seed_axes, keys, record, progress, None,
        own, point_axes, None if checkpoint is None else checkpoint.scope("points"),
    )  # fmt: skip
    frames = []
    for index, (rule, spec) in enumerate(zip(rules, specs)):
        block = slice(index * seeds, (index + 1) * seeds)
        point_metrics = {name: values[:, block] for name, values in metrics.items()}
        problem = inputs[index].problems
        frames.append(sampled_frame(rule, spec, problem, record, point_metrics, first_nonfinite[:, block]))
    return frames


def stack_over_points(items: Sequence, axes: Sequence, seeds: int) -> tuple:
    """Several points' per-seed items (NamedTuples with seed axes ``axes``) on a leading point axis:
    ``(stacked, seed_axes, point_axes)``.  A leaf equal and shared by every seed of every point stays as it
    is (both axes ``None``); one shared by each point's seeds (seed axis ``None`` in each) is stacked over
    the points (seed axis ``None``, point axis 0); any other is broadcast to (seeds, …) and stacked (P, S, …)."""
    kind = type(items[0])
    leaves, seed_axes, point_axes = [], [], []
    for index in range(len(kind._fields)):
        values = [item[index] for item in items]
        within = [axis[index] for axis in axes]
        if all(a is None for a in within):
            if all(np.array_equal(np.asarray(v), np.asarray(values[0]), equal_nan=True) for v in values):
                leaves.append(values[0])
                seed_axes.append(None)
                point_axes.append(None)
                continue
            leaves.append(jnp.stack(values))
            seed_axes.append(None)
        else:
            per_seed = [v if a == 0 else jnp.broadcast_to(v, (seeds,) + jnp.shape(v)) for v, a in zip(values, within)]
            leaves.append(jnp.stack(per_seed))
            seed_axes.append(0)
        point_axes.append(0)
    return kind(*leaves), kind(*seed_axes), kind(*point_axes)


def simulate_over_points(
    make_rule: Callable[[dict], object],
    grid: dict,
    names: tuple[str, ...],
    own: tuple,
    games: Game,
    game_axes: Game,
    targets: jax.Array,
    unregularised: jax.Array,
    record_iterations: np.ndarray,
    cache_key: Hashable,
    progress: Callable[[int, int], object] | None = None,
    checkpoint: CheckpointScope | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`sim.trajectory.simulate` over the grid (outer) and the batch of point × seed (inner).

    ``own``: per parameter of ``names``, its value for each batch entry (shape (B,)), given to
    ``make_rule`` with the grid's values.  ``targets``/``unregularised``: π* and π⁰ per batch entry (B, K).
    Like :func:`sim.trajectory.simulate_grid` the run goes in time blocks (:func:`sim.trajectory.simulate_block`
    through :func:`sim.shared_engine.run_blocks`), ``progress(updates done, T)`` between them and the state
    kept in ``checkpoint``.  Returns metrics (G, B, R) and the first non-finite iteration (G, B), as
    :func:`sim.trajectory.simulate_grid` (a second run checking every step locates a divergence).
    """
    record = np.asarray(record_iterations, np.int64)
    per_seed = jnp.stack([targets, jnp.asarray(unregularised, targets.dtype)], axis=1)
    items = (games, tuple(jnp.asarray(v) for v in own))
    axes = (game_axes, (0,) * len(own))
    items, per_seed, padded = shard_over_seeds(items, axes, per_seed)
    grid_values = grid_arrays(grid)
    arms = int(targets.shape[-1])

    def compiled(locate: bool, per_entry: bool = True, tuned: bool = True):
        def one(parameters, item, target, carry, schedule):
            game, values = item
            rule = make_rule({**parameters, **dict(zip(names, values))})
            return simulate_block(rule, game, target[0], Schedule(*schedule), carry, locate, target[1])

        kind = "exact-points" if tuned else "exact-points-state-check"  # the check is traced, never run
        key = (kind, cache_key, tuple(sorted(grid)), names, locate, per_entry)
        kept_as = "sim.point_groups.block" if isinstance(cache_key, SourceKey) and tuned else None
        options = compiler_options(arms, targets.dtype) if tuned else None  # eval_shape refuses XLA options
        return compile_over_grid_and_seeds(
            one, axes, key, options, blocks=True, carry_per_seed=per_entry, kept_as=kept_as
        )

    # The trajectory depends on what the rule reads of the game and on its parameters (π* enters the
    # metrics only): when that is the same for every entry of the batch (a rule with its own τ in a sweep
    # of game.tau) the state is carried once, as vmap kept it in one call, not once per point × seed.
    # Tracing the first block with an unbatched carry fails exactly when the state differs between entries.
    arguments = (grid_values, items, per_seed)
    whole = whole_run_schedule(record)
    try:
        jax.eval_shape(compiled(False, per_entry=False, tuned=False), *arguments, None, tuple(whole))
        per_entry = False
    except ValueError:
        per_entry = True
    points = len(next(iter(grid_values.values())))
    batch = int(per_seed.shape[0])
    block_size = block_updates(points, batch if per_entry else 1, arms, game_axes.preference is None)
    metrics, first_bad = run_blocks_locating(
        functools.partial(compiled, per_entry=per_entry), arguments, record, block_size, progress, checkpoint, batch
    )
    metrics[FINAL_POLICY] = metrics.pop("final")
    batch = per_seed.shape[0] - padded
    return {k: np.asarray(v)[:, :batch] for k, v in metrics.items()}, np.asarray(first_bad)[:, :batch]
